//! A tiny driver that plays teed, tpmd and bnxtd against the supervisor on a virtual clock
//! (quinn's `Pair` shape: drain effects, deliver answers, jump the clock to the next wakeup).
#![allow(clippy::unwrap_used, dead_code)]

use tee_proto::lifecycle::{
    BootKind, DeclineReason, InitRequest, ServerEvent, ServerKind, ShutdownReport,
};
use tee_proto::{Frame, Generation, WireError};
use teesys_init::{server_index, Effect, InitConfig, Notice, Supervisor, Transition};

/// How a played server answers `Hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnHello {
    Ready,
    /// What a real teed does: decline when the crash flag is set, else Ready.
    DeclineIfCrashFlag,
    Silent,
    Refuse,
}

/// How a played server answers `Shutdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnShutdown {
    Ack,
    Silent,
    /// The process dies instead of answering.
    Exit,
    Refuse,
}

#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    pub on_hello: OnHello,
    pub hello_latency: u64,
    pub on_shutdown: OnShutdown,
    pub shutdown_latency: u64,
}

impl Behaviour {
    fn default_for(server: ServerKind) -> Self {
        Behaviour {
            on_hello: if server == ServerKind::Teed {
                OnHello::DeclineIfCrashFlag
            } else {
                OnHello::Ready
            },
            hello_latency: 5,
            on_shutdown: OnShutdown::Ack,
            shutdown_latency: 5,
        }
    }
}

pub const ACK_REPORT: ShutdownReport = ShutdownReport {
    unregistered: 1,
    sessions_closed: 1,
    cache_buffers_freed: 0,
    errors: 0,
};

#[derive(Debug, Clone)]
enum Delivery {
    Event(Frame<ServerEvent>),
    Exit,
}

pub struct Harness {
    pub sup: Supervisor,
    pub now: u64,
    pub behaviour: [Behaviour; 3],
    /// Every effect with the time it was drained.
    pub log: Vec<(u64, Effect)>,
    /// The generation of each running played process.
    running: [Option<Generation>; 3],
    pending: Vec<(u64, ServerKind, Generation, Delivery)>,
}

impl Harness {
    pub fn new(config: InitConfig) -> Self {
        Harness {
            sup: Supervisor::new(config),
            now: 0,
            behaviour: teesys_init::SERVERS.map(Behaviour::default_for),
            log: Vec::new(),
            running: [None; 3],
            pending: Vec::new(),
        }
    }

    pub fn behaviour(&mut self, server: ServerKind) -> &mut Behaviour {
        &mut self.behaviour[server_index(server)]
    }

    pub fn boot(&mut self, kind: BootKind) {
        // The previous world is torn down by the shell before the next boot.
        self.running = [None; 3];
        self.pending.clear();
        self.sup.boot(self.now, kind);
        self.pump();
    }

    /// Boots and runs until `Booted`.
    pub fn boot_and_settle(&mut self, kind: BootKind) {
        let mark = self.log.len();
        self.boot(kind);
        self.run_until(|h| h.last_booted_index().is_some_and(|i| i >= mark));
    }

    /// The played process of `server` dies on its own now.
    pub fn kill(&mut self, server: ServerKind) {
        self.running[server_index(server)] = None;
        self.sup.server_exited(self.now, server);
        self.pump();
    }

    pub fn is_running(&self, server: ServerKind) -> bool {
        self.running[server_index(server)].is_some()
    }

    /// Drains every effect and lets the played servers react.
    pub fn pump(&mut self) {
        while let Some(effect) = self.sup.poll() {
            self.log.push((self.now, effect.clone()));
            match effect {
                Effect::Start { server, generation } => {
                    assert!(!self.is_running(server), "{server:?} started twice");
                    self.running[server_index(server)] = Some(generation);
                }
                Effect::Stop { server } => {
                    self.running[server_index(server)] = None;
                    self.pending.retain(|(_, s, _, _)| *s != server);
                }
                Effect::Send { server, frame } => self.react(server, frame),
                Effect::Transition(_) | Effect::Booted(_) | Effect::Notice(_) => {}
            }
        }
    }

    fn react(&mut self, server: ServerKind, frame: Frame<InitRequest>) {
        let generation = self.running[server_index(server)]
            .unwrap_or_else(|| panic!("frame sent to {server:?}, which is not running"));
        assert_eq!(frame.header.to_generation, generation, "frame misaddressed");
        let behaviour = self.behaviour[server_index(server)];
        let reply = |body| Frame {
            header: frame.header.reply_to(generation),
            body,
        };
        let (latency, delivery) = match frame.body {
            InitRequest::Hello { boot, .. } => {
                let body = match behaviour.on_hello {
                    OnHello::Ready => ServerEvent::Ready { generation },
                    OnHello::DeclineIfCrashFlag if boot.crash_flag => ServerEvent::Declined {
                        reason: DeclineReason::CrashKernel,
                    },
                    OnHello::DeclineIfCrashFlag => ServerEvent::Ready { generation },
                    OnHello::Refuse => ServerEvent::Error(WireError::BadRequest),
                    OnHello::Silent => return,
                };
                (behaviour.hello_latency, Delivery::Event(reply(body)))
            }
            InitRequest::Shutdown { .. } => {
                let delivery = match behaviour.on_shutdown {
                    OnShutdown::Ack => Delivery::Event(reply(ServerEvent::ShutdownAck(ACK_REPORT))),
                    OnShutdown::Refuse => {
                        Delivery::Event(reply(ServerEvent::Error(WireError::Busy)))
                    }
                    OnShutdown::Exit => Delivery::Exit,
                    OnShutdown::Silent => return,
                };
                (behaviour.shutdown_latency, delivery)
            }
            // The supervisor itself never sends these (the hosted shell does), nor expects an answer.
            InitRequest::Status
            | InitRequest::ClientEndpoint { .. }
            | InitRequest::TeedEndpoint { .. } => return,
        };
        self.pending
            .push((self.now + latency, server, generation, delivery));
    }

    /// When something next happens: a played answer or a supervisor deadline.
    fn next_wakeup(&self) -> Option<u64> {
        let answer = self.pending.iter().map(|(at, ..)| *at).min();
        match (answer, self.sup.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances to the next wakeup and handles it; false when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        self.pump();
        let Some(at) = self.next_wakeup() else {
            return false;
        };
        self.now = self.now.max(at);
        let (due, later): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|(at, ..)| *at <= self.now);
        self.pending = later;
        for (_, server, generation, delivery) in due {
            // A process killed meanwhile sends nothing.
            if self.running[server_index(server)] != Some(generation) {
                continue;
            }
            match delivery {
                Delivery::Event(frame) => self.sup.handle_event(self.now, server, frame),
                Delivery::Exit => {
                    self.running[server_index(server)] = None;
                    self.sup.server_exited(self.now, server);
                }
            }
            self.pump();
        }
        if self.sup.poll_timeout().is_some_and(|t| t <= self.now) {
            self.sup.handle_timeout(self.now);
        }
        self.pump();
        true
    }

    /// Steps until `done` holds; a livelock is a test failure.
    pub fn run_until(&mut self, done: impl Fn(&Harness) -> bool) {
        for _ in 0..10_000 {
            self.pump();
            if done(self) {
                return;
            }
            assert!(
                self.step(),
                "idle at {} before the condition held",
                self.now
            );
        }
        panic!("no progress after 10000 steps");
    }

    /// Steps until nothing is left to happen.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            if !self.step() {
                return;
            }
        }
        panic!("no progress after 10000 steps");
    }

    /// Steps through everything due up to `until`, then sets the clock there.
    pub fn advance_to(&mut self, until: u64) {
        for _ in 0..10_000 {
            self.pump();
            match self.next_wakeup() {
                Some(at) if at <= until => {
                    self.step();
                }
                _ => {
                    self.now = self.now.max(until);
                    return;
                }
            }
        }
        panic!("no progress after 10000 steps");
    }

    /// Runs until the supervisor hands over a transition and returns it.
    pub fn run_to_transition(&mut self) -> Transition {
        let start = self.log.len();
        self.run_until(|h| {
            h.log[start..]
                .iter()
                .any(|(_, e)| matches!(e, Effect::Transition(_)))
        });
        self.log[start..]
            .iter()
            .find_map(|(_, e)| match e {
                Effect::Transition(t) => Some(*t),
                _ => None,
            })
            .unwrap()
    }

    // ---- queries on the log ----

    pub fn last_booted_index(&self) -> Option<usize> {
        self.log
            .iter()
            .rposition(|(_, e)| matches!(e, Effect::Booted(_)))
    }

    /// Position and time of the first effect after `from` matching `pred`.
    pub fn find_from(&self, from: usize, pred: impl Fn(&Effect) -> bool) -> Option<(usize, u64)> {
        self.log[from..]
            .iter()
            .position(|(_, e)| pred(e))
            .map(|i| (from + i, self.log[from + i].0))
    }

    pub fn notices(&self) -> Vec<Notice> {
        self.log
            .iter()
            .filter_map(|(_, e)| match e {
                Effect::Notice(n) => Some(*n),
                _ => None,
            })
            .collect()
    }

    pub fn starts(&self, server: ServerKind) -> Vec<(u64, Generation)> {
        self.log
            .iter()
            .filter_map(|(at, e)| match e {
                Effect::Start {
                    server: s,
                    generation,
                } if *s == server => Some((*at, *generation)),
                _ => None,
            })
            .collect()
    }

    /// Every `Hello` sent to `server`, with its time.
    pub fn hellos(&self, server: ServerKind) -> Vec<(u64, InitRequest)> {
        self.sends(server)
            .into_iter()
            .filter(|(_, body)| matches!(body, InitRequest::Hello { .. }))
            .collect()
    }

    pub fn sends(&self, server: ServerKind) -> Vec<(u64, InitRequest)> {
        self.log
            .iter()
            .filter_map(|(at, e)| match e {
                Effect::Send { server: s, frame } if *s == server => Some((*at, frame.body)),
                _ => None,
            })
            .collect()
    }
}

pub fn is_start(server: ServerKind) -> impl Fn(&Effect) -> bool {
    move |e| matches!(e, Effect::Start { server: s, .. } if *s == server)
}

pub fn is_stop(server: ServerKind) -> impl Fn(&Effect) -> bool {
    move |e| matches!(e, Effect::Stop { server: s } if *s == server)
}

pub fn is_hello(server: ServerKind) -> impl Fn(&Effect) -> bool {
    move |e| {
        matches!(e, Effect::Send { server: s, frame } if *s == server
            && matches!(frame.body, InitRequest::Hello { .. }))
    }
}

pub fn is_shutdown(server: ServerKind) -> impl Fn(&Effect) -> bool {
    move |e| {
        matches!(e, Effect::Send { server: s, frame } if *s == server
            && matches!(frame.body, InitRequest::Shutdown { .. }))
    }
}

pub fn is_transition(e: &Effect) -> bool {
    matches!(e, Effect::Transition(_))
}
